"""The repair room: rewrite what `check` found, prove it, and write it only when proved.

`plan.repair` takes its choices as one `options.RepairOptions` (checked before any
work), runs one rewrite per finding (`reshape`, `sizes`, `constants`; each returns a
`Change` or a `Declined`, never raises to decline) through `edit.GraphEdit`, where each
finding's edit is kept whole or not at all (`size_nodes` builds the nodes that compute a
size), proves the result with `verify`, writes it through `write` (staged, committed by
one rename in `diagnostics.atomic`) and returns `results.RepairReport`.
`diagnostics.repair` (the function) is the public entry point.
"""
