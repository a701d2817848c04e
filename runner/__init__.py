"""techops: run, schedule and record the TechOps Ansible content."""

__version__ = "0.1.0"
