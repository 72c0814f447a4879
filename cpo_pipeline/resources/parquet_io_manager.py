"""The IO manager every table asset uses: one Parquet file per asset (and per partition)."""


from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa

from cpo_pipeline import schemas
from cpo_pipeline.resources.settings import PipelineSettings
from cpo_pipeline.storage import read_parquet, table_path, write_parquet
from cpo_pipeline.wiring.metadata import column_schema


class ParquetIOManager(dg.ConfigurableIOManager):
    """Writes pandas DataFrames or Arrow tables to `<data_root>/tables/<asset key>.parquet`.

    The data root is the `settings` resource's, so tables, images and caches always sit under
    one root, however it was set (environment or launchpad). Tables with a declared schema
    (`cpo_pipeline.schemas`) are conformed to it before writing, so a missing or mistyped column
    fails the step that produced it, not a later reader. Inputs load as pandas DataFrames, or as
    Arrow tables when the input is annotated `pyarrow.Table`.
    """

    settings: PipelineSettings

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        partition = context.partition_key if context.has_partition_key else None
        return table_path(self.settings.data_root_path(), context.asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | pa.Table | None) -> None:
        if obj is None:
            return
        table = obj if isinstance(obj, pa.Table) else pa.Table.from_pandas(obj, preserve_index=False)
        table = schemas.conform(table, context.asset_key.path[-1])
        path = self._path(context)
        write_parquet(table, path)
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(path)),
                "dagster/row_count": table.num_rows,
                "dagster/column_schema": column_schema(table.schema),
                "size_bytes": path.stat().st_size,
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | pa.Table:
        table = read_parquet(self._path(context))
        if context.dagster_type.typing_type is pa.Table:
            return table
        return table.to_pandas()
