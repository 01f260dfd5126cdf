"""Every API list is paginated (``?page=N&page_size=M``); kept apart from the views because
DRF reads this class while its generic views are being imported."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
