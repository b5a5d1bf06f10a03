"""The probe room: prove what analysis suspects by running the model in onnxruntime.

`run.run_probe` runs at shapes the export dummy never had and checks batch invariance;
`feeds` builds inputs from the graph alone; `given` probes on the user's own `--inputs`.
"""
