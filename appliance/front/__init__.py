"""The proxy's front door: the listeners (``server``: the proxy port, the TLS listener, CONNECT and
TLS interception), the ``router`` every decrypted or plain request goes through (the intercept
decision, health, ``/metrics``, ``/ca.crt``, ``/setup/``, mirror mode, plain-HTTP forwarding), who a
connection is (``identity``), the CONNECTs it does not intercept (``blind_tunnel``, ``tunnel``,
``tunnel_policy``), mirror-mode path routing (``mirror``), the interception CA (``ca``), the
name-constrained intermediate it signs (``intermediate``) and the leaves (``leaf_certs``), the client
CA (``client_ca``), and the client setup scripts.  It may import `registry`, `access` and everything
below them (`upstream`, `cache`, `config`), the root `metrics` and `accesslog`, and the root
vocabulary (`oci`, `events`, `stats`) and basics (`errors`, `digests`, `tasks`, `memory`, `logsafe`);
never `engine`, `control`, `runner` or `cli`.
"""
