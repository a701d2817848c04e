"""Detection: the alerts Alertmanager sends, the incidents they open in the ledger, and
the capacity Prometheus has measured."""
