"""Screens: dashboard, registries editor (+ forms), cache, env view, help, disconnected, confirm."""
