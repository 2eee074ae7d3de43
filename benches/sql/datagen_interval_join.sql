-- An interval join, the same text on fsql (`fsql run --unthrottled`) and on Flink
-- (`scripts/flink_compare.sh benches/sql/datagen_interval_join.sql`): authorisations and captures
-- (two datagen sources of 10 million rows each, one every 10 ms of event time; a capture follows its
-- authorisation by 5 s) joined on the payment id within 10 minutes -> blackhole. Every
-- authorisation meets its capture: 10 million joined rows.
CREATE TABLE auths (
  seq    BIGINT,
  amount DOUBLE,
  ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '10000000',
  'fields.amount.min' = '0', 'fields.amount.max' = '5000'
);

CREATE TABLE captures (
  seq    BIGINT,
  ts AS TO_TIMESTAMP_LTZ(seq * 10 + 5000, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '10000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '10000000'
);

CREATE TABLE sink (
  seq         BIGINT,
  amount      DOUBLE,
  auth_ts     TIMESTAMP_LTZ(3),
  captured_ts TIMESTAMP_LTZ(3)
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT a.seq, a.amount, a.ts, CAST(c.ts AS TIMESTAMP_LTZ(3))
FROM auths a JOIN captures c
  ON a.seq = c.seq AND c.ts BETWEEN a.ts AND a.ts + INTERVAL '10' MINUTE;
