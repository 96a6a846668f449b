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

-- Second example (mappings/customers.yaml): a legacy-style table with a composite key
-- (tenant_id, customer_no), Y/N flags, money kept as text, Unix-epoch timestamps and JSON
-- in a TEXT column. Its addresses reference it through non-primary columns.
CREATE TABLE shop.customers (
  tenant_id     INT UNSIGNED NOT NULL,
  customer_no   VARCHAR(20) NOT NULL,
  name          VARCHAR(200) NOT NULL,
  email         VARCHAR(255) NULL,
  is_active     CHAR(1) NOT NULL DEFAULT 'Y',
  credit_limit  VARCHAR(20) NULL,
  signup_ts     INT UNSIGNED NOT NULL,
  preferences   TEXT NULL,
  password_hash VARCHAR(255) NULL,
  PRIMARY KEY (tenant_id, customer_no)
) ENGINE=InnoDB;

CREATE TABLE shop.customer_addresses (
  address_id    BIGINT PRIMARY KEY AUTO_INCREMENT,
  tenant_id     INT UNSIGNED NOT NULL,
  customer_no   VARCHAR(20) NOT NULL,
  kind          ENUM('billing','shipping') NOT NULL,
  street        VARCHAR(200) NOT NULL,
  city          VARCHAR(100) NOT NULL,
  zip           VARCHAR(20) NOT NULL,
  country       CHAR(2) NOT NULL,
  removed       TINYINT(1) NOT NULL DEFAULT 0,
  KEY ix_customer_addresses_customer (tenant_id, customer_no)
) ENGINE=InnoDB;
