"""The HTTP adapter: AdmissionReview in, AdmissionReview out. No chart knowledge lives here."""
