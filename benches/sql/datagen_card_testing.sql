-- The card-testing pattern (MATCH_RECOGNIZE), the same text on fsql (`fsql run --unthrottled`) and on
-- Flink (`scripts/flink_compare.sh benches/sql/datagen_card_testing.sql`, through
-- ../shared/tools/flink_oracle.py): datagen (100k cards, amounts uniform in [0, 20), one row every
-- 10 ms of event time) -> per card, at least three amounts under 2 followed by one over 15 within
-- 10 minutes -> blackhole. 10 % of rows are small, so most rows start an attempt that ends at once.
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
  'fields.amount.min' = '0', 'fields.amount.max' = '20'
);

CREATE TABLE sink (
  card        BIGINT,
  first_small TIMESTAMP_LTZ(3),
  n_small     BIGINT,
  large_amount       DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT card, first_small, n_small, large_amount
FROM src
  MATCH_RECOGNIZE (
    PARTITION BY card
    ORDER BY ts
    MEASURES
      FIRST(S.ts) AS first_small,
      COUNT(S.amount) AS n_small,
      L.amount AS large_amount
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S{3,} L) WITHIN INTERVAL '10' MINUTE
    DEFINE
      S AS S.amount < 2,
      L AS L.amount > 15
  ) AS T;
