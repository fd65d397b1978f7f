"""The admission half of pulltag: AdmissionReview in, record + patch out."""
