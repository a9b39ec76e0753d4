"""What one delivery attempt came to: the attempt log's outcomes, shared by orders and alerts."""
from django.db import models


class Outcome(models.TextChoices):
    STARTED = "started", "started (the request under way)"
    DELIVERED = "delivered", "delivered"
    RETRYABLE = "retryable", "retryable (5xx, 429, or no connection was made)"
    PERMANENT = "permanent", "refused (4xx)"
    AMBIGUOUS = "ambiguous", "no answer after the request left"
    INTERRUPTED = "interrupted", "interrupted (its sender died during the request)"
