"""The repair room: rewrite what `check` found, prove it, and write it only when proved.

`plan.repair` runs one rewrite per finding (`reshape`, `sizes`, `constants`; each returns
a `Change` or a `Declined`, never raises to decline) through `edit.GraphEdit`, proves the
result with `verify`, and returns `results.RepairReport`. `diagnostics.repair` (the
function) is the public entry point.
"""
