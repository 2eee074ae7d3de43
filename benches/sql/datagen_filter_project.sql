-- datagen -> filter/project -> blackhole: the same text runs on fsql (`fsql run --unthrottled`) and on
-- Flink (`scripts/flink_compare.sh`, through ../shared/tools/flink_oracle.py). 10 million rows, bounded by
-- the `seq` sequence; 'rows-per-second' is high enough not to throttle Flink (fsql ignores it with
-- --unthrottled). scripts/flink_compare.sh and benches/foundation.rs substitute the row count
-- (FSQL_BENCH_ROWS) by replacing every '10000000'.
CREATE TABLE events (
  seq    BIGINT,
  card   INT,
  amount DOUBLE,
  ts AS TO_TIMESTAMP_LTZ(seq * 100, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '10000000',
  'fields.card.min' = '1', 'fields.card.max' = '10000',
  'fields.amount.min' = '0', 'fields.amount.max' = '5000'
);

CREATE TABLE sink (
  seq   BIGINT,
  card  INT,
  gross DOUBLE,
  big   BOOLEAN,
  band  STRING,
  ts    TIMESTAMP_LTZ(3)
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT seq, card, amount * 1.1 AS gross, amount > 1000 AS big,
       CASE WHEN amount > 4000 THEN 'high' WHEN amount > 1000 THEN 'mid' ELSE 'low' END AS band,
       ts
FROM events
WHERE card % 10 <> 3 AND amount > 10;
