"""Running playbooks: the request and ansible-runner's arguments (`request`), the run and
its observers (`run`), live progress, execution nodes (`remote`), host locks, and the one
recorded path every run takes (`launch`)."""
