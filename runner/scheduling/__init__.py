"""Scheduling: schedules.yml (`model`), the one gate that decides whether a job may start
(`gate`), a job fired through it (`jobs`), the scheduler service, systemd units, the
listing, and notifications."""
