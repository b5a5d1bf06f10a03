"""The CLI room: one module per `python -m extractor` subcommand, each an `add_<command>`
that builds its parser and the handler it sets (`extract`, `bench`, `graft_check`), and
`exits` for the exit codes and the one error line they share. `extractor.__main__` only
dispatches. Heavy modules are imported inside the handlers: help and usage errors are instant.
"""
