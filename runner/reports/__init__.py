"""Reports, read from the ledger alone: one module per report, shared rendering in
`render`, the runs as recorded in `model`."""
