"""Chips joined by links: the network interface, the link model and collective algorithms."""
