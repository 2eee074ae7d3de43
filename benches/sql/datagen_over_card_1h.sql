-- Per-card velocity features, the same text on fsql (`fsql run --unthrottled`) and on Flink
-- (`scripts/flink_compare.sh benches/sql/datagen_over_card_1h.sql`, through ../shared/tools/flink_oracle.py):
-- datagen (100k cards) -> OVER (PARTITION BY card ORDER BY ts RANGE 1 h) COUNT(*) + SUM(amount) -> blackhole.
-- 10 million rows, bounded by the `seq` sequence; one row every 10 ms of event time (so a 1 h window
-- holds 360,000 rows, ~3.6 per card). 'rows-per-second' is high enough not to throttle Flink (fsql
-- ignores it with --unthrottled). scripts/flink_compare.sh substitutes the row count (ROWS) by
-- replacing every '10000000'.
CREATE TABLE src (
  seq    BIGINT,
  card   BIGINT,
  amount DOUBLE,
  ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '10000000',
  'fields.card.min' = '1', 'fields.card.max' = '100000',
  'fields.amount.min' = '0', 'fields.amount.max' = '5000'
);

CREATE TABLE sink (
  seq         BIGINT,
  card        BIGINT,
  card_txn_1h BIGINT,
  card_amt_1h DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT seq, card, COUNT(*) OVER w, SUM(amount) OVER w
FROM src
WINDOW w AS (PARTITION BY card ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
