"""How work moves: the Celery app and its settings, the producers, and the schedule."""
