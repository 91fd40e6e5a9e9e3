"""The proxy's front door: the listening server that tells CONNECT tunnels from mirror-mode
requests, the MITM tunnel and the policy for where a tunnel may go, mirror-mode path routing, the CA and
the leaf certificates it signs, and the client setup scripts.  It may import `registry`, `config` and the
root modules (errors, tasks, memory), and `upstream.addresses` for address classes; it never imports
`control` or `cli`.
"""
