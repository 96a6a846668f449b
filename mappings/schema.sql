-- Example monolith schema used by the mappings in this folder, `make demo` and the tests.
-- The tests replace the schema name `shop` with a throwaway database.
CREATE DATABASE IF NOT EXISTS shop;

CREATE TABLE shop.orders (
  id          BIGINT PRIMARY KEY AUTO_INCREMENT,
  customer_id BIGINT NOT NULL,
  status      ENUM('pending','paid','shipped','cancelled') NOT NULL DEFAULT 'pending',
  total       DECIMAL(12,2) NOT NULL DEFAULT 0,
  currency    CHAR(3) NOT NULL DEFAULT 'EUR',
  created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  deleted_at  DATETIME NULL,
  note        TEXT NULL
) ENGINE=InnoDB;

CREATE TABLE shop.order_lines (
  id          BIGINT PRIMARY KEY,
  order_id    BIGINT NOT NULL,
  sku         VARCHAR(64) NOT NULL,
  quantity    INT NOT NULL,
  unit_price  DECIMAL(12,2) NOT NULL,
  KEY ix_order_lines_order (order_id)
) ENGINE=InnoDB;
