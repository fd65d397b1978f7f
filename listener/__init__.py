"""The informer half of pulltag: watch Pulled events, confirm pulls, tag images."""
