"""Deployments: endpoints of valohai.yaml served as versions, routed by alias, compared side by side."""
