"""The JSON API under ``/api/``: Django REST framework, OpenAPI 3 by drf-spectacular,
``Authorization: Bearer TOKEN`` only (``posture.models.ApiToken``), the pages' roles."""
