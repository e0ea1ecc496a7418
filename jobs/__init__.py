"""Finetuning jobs, whoever runs them: the record each keeps in ``models/<name>/job.json``,
the interface every job backend offers the server, and the training of one job."""
