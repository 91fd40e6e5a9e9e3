"""Widgets of the dashboard; each reads ``DashboardState`` and redraws on its ``changed`` topics."""
