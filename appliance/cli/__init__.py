"""The `appliance` command: the argument parser and `main`, and its subcommands (setup, control, cache,
prefetch, users/tokens/ACL rules, client certificates, the dashboard launcher). It may import any other
package of the engine; nothing imports it but `appliance.__main__`.
"""
