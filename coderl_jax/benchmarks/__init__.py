"""Throughput benchmarks: one module per kind (`train`, `sample`, `execute`), each exposing
`add_arguments(parser)` and `run(args) -> dict` (the JSON line `coderl benchmark KIND --json`
prints). Every number is measured in the run that prints it."""
