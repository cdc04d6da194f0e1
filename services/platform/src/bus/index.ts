export type { ConsumeBatchOptions } from "./batches.js";
export * from "./bus.js";
export * from "./connection.js";
export type { ConsumeOptions, LaneConsumeOptions } from "./consume.js";
export type { BusLogger, Subscription } from "./context.js";
export {
  type DeadLetter,
  HEADER_DLQ_CODE,
  HEADER_DLQ_DELIVERIES,
  HEADER_DLQ_REASON,
  HEADER_DLQ_STREAM_SEQ,
  HEADER_DLQ_SUBJECT,
} from "./dead-letters.js";
export { type Delivery, type DeliveryContext, defaultRetryDelay } from "./delivery.js";
export { isRevisionConflict, type KvBucketOptions, type KvEntry, type RevisionedKv } from "./kv.js";
export { decodeLogChunk, type LogEntry, type LogTail } from "./logs.js";
export * from "./permissions.js";
export {
  HEADER_EVENT_TYPE,
  HEADER_EVENT_VERSION,
  HEADER_TASK_ID,
  type PublishResult,
  publishAsDispatcher,
  type QueuedWork,
} from "./publish.js";
export { type Listener, RpcClient, type RpcHandler, type RpcRequest, rpcReplyOf } from "./rpc.js";
export type { ConsumerCounts, ConsumerSpec, StoredMessage, StreamSettings } from "./streams.js";
export * from "./trace-context.js";
