-- Session windows of 1,000,000 cards, all open at once: datagen (3,000,000 payments, cards uniform in
-- [1, 1,000,000], one payment every 10 ms of event time, so 8.3 hours in all) -> per card, sessions
-- with a 24-hour gap (none closes before the input ends) counting payments, summing, and taking
-- the largest and the distinct merchants -> blackhole. Peak memory under each state backend:
-- docs/BENCHMARKS.md, "Session windows in RocksDB".
CREATE TABLE src (
  seq      BIGINT,
  card     BIGINT,
  merchant BIGINT,
  amount   DOUBLE,
  ts AS TO_TIMESTAMP_LTZ(seq * 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '3000000', 'rows-per-second' = '1000000000',
  'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '3000000',
  'fields.card.min' = '1', 'fields.card.max' = '1000000',
  'fields.merchant.min' = '1', 'fields.merchant.max' = '5000',
  'fields.amount.min' = '0', 'fields.amount.max' = '500'
);

CREATE TABLE sink (
  card         BIGINT,
  window_start TIMESTAMP(3),
  window_end   TIMESTAMP(3),
  payments     BIGINT,
  total        DOUBLE,
  largest      DOUBLE,
  merchants    BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT card, window_start, window_end, COUNT(*), SUM(amount), MAX(amount), COUNT(DISTINCT merchant)
FROM TABLE(SESSION(TABLE src PARTITION BY card, DESCRIPTOR(ts), INTERVAL '24' HOURS))
GROUP BY card, window_start, window_end;
