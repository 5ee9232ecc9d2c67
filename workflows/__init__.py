"""Saga workflows. They orchestrate only: no I/O, no ``services`` imports; every effect is an activity."""
