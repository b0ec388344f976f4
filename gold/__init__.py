"""Gold: MobileNetV2 features (``gold.image_features``), Parquet export, and PCA."""
