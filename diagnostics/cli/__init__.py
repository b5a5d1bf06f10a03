"""The diagnostics CLI room: one module per subcommand (`check` with `show`, `repair`,
`compare`), each `add_<command>(subparsers)` and its handler; `common` holds the flags
and exit codes they share. `python -m diagnostics` (`__main__`) only parses and dispatches."""
