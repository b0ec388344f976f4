"""Silver: labelled 224x224 RGB images (``silver.images``) and quarantined files (``silver.rejects``)."""
