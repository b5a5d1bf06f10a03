"""The bench room: `python -m extractor bench DIR` timings (`speed`) and `--peers` (`peers`)."""
