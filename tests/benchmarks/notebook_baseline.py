"""The original notebook's featurization, as it was, for the benchmark's baseline.

    spark-submit ... notebook_baseline.py SOURCE OUTPUT imagenet|random

binaryFile read of the JPEGs, label from the path, MobileNetV2 weights broadcast from the
driver, a Scalar Iterator pandas UDF that builds the model for every partition,
``repartition(20)``, Parquet output. Prints ``RESULT{json}`` with the featurization's
images per second (the write action's wall time, as the gold job's model time).
"""

import io
import json
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from PIL import Image
from pyspark.sql import SparkSession
from pyspark.sql.functions import col, element_at, pandas_udf, split
from tensorflow.keras import Model
from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2, preprocess_input
from tensorflow.keras.preprocessing.image import img_to_array

source, output, weights = sys.argv[1:4]
spark = SparkSession.builder.appName("notebook-baseline").getOrCreate()
sc = spark.sparkContext

images = (
    spark.read.format("binaryFile")
    .option("pathGlobFilter", "*.jpg")
    .option("recursiveFileLookup", "true")
    .load(source)
)
images = images.withColumn("label", element_at(split(images["path"], "/"), -2))

model = MobileNetV2(weights="imagenet" if weights == "imagenet" else None,
                    include_top=True, input_shape=(224, 224, 3))
new_model = Model(inputs=model.input, outputs=model.layers[-2].output)
brodcast_weights = sc.broadcast(new_model.get_weights())


def model_fn():
    model = MobileNetV2(weights=None, include_top=True, input_shape=(224, 224, 3))
    for layer in model.layers:
        layer.trainable = False
    new_model = Model(inputs=model.input, outputs=model.layers[-2].output)
    new_model.set_weights(brodcast_weights.value)
    return new_model


def preprocess(content):
    img = Image.open(io.BytesIO(content)).resize([224, 224])
    arr = img_to_array(img)
    return preprocess_input(arr)


def featurize_series(model, content_series):
    input = np.stack(content_series.map(preprocess))
    preds = model.predict(input, verbose=0)
    output = [p.flatten() for p in preds]
    return pd.Series(output)


# The notebook declared PandasUDFType.SCALAR_ITER (Spark 3); Spark 4 reads the same
# Scalar Iterator UDF from its type hints.
@pandas_udf("array<float>")
def featurize_udf(content_series_iter: Iterator[pd.Series]) -> Iterator[pd.Series]:
    model = model_fn()
    for content_series in content_series_iter:
        yield featurize_series(model, content_series)


features_df = images.repartition(20).select(
    col("path"), col("label"), featurize_udf("content").alias("features")
)
count = images.count()
started = time.perf_counter()
features_df.write.mode("overwrite").parquet(output)
seconds = time.perf_counter() - started
print("RESULT" + json.dumps({"images": count, "seconds": round(seconds, 1),
                             "images_per_s": round(count / seconds, 1)}))
