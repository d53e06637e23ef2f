"""Running jobs: ``run_job(job_id)`` and the dispatchers that decide where it runs."""
