-- A sliding-window aggregate, the same text on fsql (`fsql run --unthrottled`) and on Flink
-- (`scripts/flink_compare.sh benches/sql/datagen_hop_merchant_1h.sql`):
-- datagen (1,000 merchants) -> HOP(slide 1 min, size 1 h) COUNT(*) + SUM(amount) + MAX(amount) per
-- merchant -> blackhole. 10 million rows, one every 10 ms of event time (27.8 h), so each 1 h window
-- holds 360,000 rows and each minute fires ~1,000 windows (1.67 M result rows in all).
CREATE TABLE src (
  seq      BIGINT,
  merchant BIGINT,
  amount   DOUBLE,
  ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '10000000',
  'fields.merchant.min' = '1', 'fields.merchant.max' = '1000',
  'fields.amount.min' = '0', 'fields.amount.max' = '5000'
);

CREATE TABLE sink (
  window_start TIMESTAMP(3),
  window_end   TIMESTAMP(3),
  merchant     BIGINT,
  txn_1h       BIGINT,
  amount_1h    DOUBLE,
  max_1h       DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT window_start, window_end, merchant, COUNT(*), SUM(amount), MAX(amount)
FROM TABLE(HOP(TABLE src, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR))
GROUP BY window_start, window_end, merchant;
