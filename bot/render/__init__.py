"""Renderers: data in, text / Block Kit / PNG out. Pure apart from matplotlib."""
