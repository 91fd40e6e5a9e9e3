"""The `appliance` command: the argument parser and `main`, and its subcommands (setup, control,
cache, prefetch, the dashboard launcher).  It may import any other package of the engine; nothing
imports it but `appliance.__main__`.
"""
