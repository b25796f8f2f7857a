"""The mutual-aid plan's model and rules; imports no Celery, Redis or httpx."""
