"""The proxy's front door: the listening server that tells CONNECT tunnels from mirror-mode requests, the
MITM tunnel and the policy for where a tunnel may go, mirror-mode path routing, the CA and the leaf
certificates it signs, and the client setup scripts.  It may import `registry` and everything below it
(`upstream`, `cache`, `config`), the root `metrics` and `accesslog`, and the root vocabulary (`oci`,
`events`, `stats`) and basics (`errors`, `digests`, `tasks`, `memory`, `logsafe`); never `engine`,
`control`, `runner` or `cli`.
"""
