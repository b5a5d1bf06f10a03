"""The view room: show a checked model in Netron.

`annotate` makes the annotated copy and one node's neighbourhood (onnx-ir models that
never read the weights); `netron.open_in_netron` serves them (and is what
`Report.open_in_netron` calls).
"""
