import { FormatRegistry } from "@sinclair/typebox";

// TypeBox rejects unknown string formats; register the few the catalogue uses.
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set("date-time", (value) => ISO_DATE_TIME.test(value) && !Number.isNaN(Date.parse(value)));
}
