"""The ledger: the hash-chained store (`store`), redaction of secrets before anything is
stored (`redact`), the recorder that writes runs into it (`recorder`), and retention.

It knows nothing of reports, the terminal or the scheduler.
"""
