//! What people look at: history.csv, predictions.csv, plots, TensorBoard events, results table.
