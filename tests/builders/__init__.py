"""What the tests (and the benchmarks) build: tiny encoders of every type, the files
real projects save (GLiNER, SpanMarker, sentence-transformers, OneIE, Lightning),
broken and hostile exports, and the bad-input corpus. Importable as `builders`
under pytest (`pythonpath = ["tests"]`) and as `tests.builders` from the
repository root (`python -m benchmarks.NAME`)."""
