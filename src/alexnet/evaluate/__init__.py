"""Scoring models: views and inputs, top-1/top-5 and ensembles, predictions and features,
binary codes, export and int8."""
