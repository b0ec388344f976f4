"""What the layers share: configuration, the SparkSession builder, tables, images, run log."""
