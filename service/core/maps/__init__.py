"""Recalibration maps: temperature, vector/matrix scaling, Platt/beta, isotonic/histogram, fit metrics."""
