"""The host toolkit's base: the command runner, its errors and safe paths.

Shared by the agent daemon and the control plane's builder; knows neither.
"""
