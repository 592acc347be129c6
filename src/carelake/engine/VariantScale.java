// cl_variant_scale(v): the scale a JSON number was written with, read from Spark's VARIANT encoding.
//
// parse_json keeps a decimal's written scale (1.0 is stored as 10 x 10^-1), but every Spark SQL function
// that reads it strips trailing zeros, and neither a Python nor a SQL UDF may run inside the lambdas that
// compiled views use. FHIRPath's lowBoundary()/highBoundary() need that scale. carelake.engine._spark_jar
// compiles this file with the JDK's javac and adds it to the Spark sessions carelake starts.
//
// The encoding (Spark's VariantUtil, the Parquet Variant spec): the value's first byte is a header whose
// low two bits are the basic type (0 = primitive) and whose upper six are the primitive type; decimals
// (4, 8 and 16 bytes: types 8, 9, 10) store their scale in the next byte.
package carelake.spark;

import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.unsafe.types.VariantVal;

public final class VariantScale implements UDF1<VariantVal, Integer> {
    private static final int PRIMITIVE = 0;
    private static final int INT8 = 3, INT64 = 6, DOUBLE = 7, DECIMAL4 = 8, DECIMAL16 = 10, FLOAT = 14;

    @Override
    public Integer call(VariantVal v) {
        if (v == null) {
            return null;
        }
        byte[] value = v.getValue();
        int header = value[0] & 0xff;
        if ((header & 0x3) != PRIMITIVE) {
            return null;
        }
        int type = header >> 2;
        if (type >= DECIMAL4 && type <= DECIMAL16) {
            return (int) value[1];
        }
        if (type >= INT8 && type <= INT64) {
            return 0;
        }
        if (type == DOUBLE || type == FLOAT) {
            // A number parse_json could not keep as a decimal (an exponent, or over 38 digits): its shortest form.
            ByteBuffer bytes = ByteBuffer.wrap(value, 1, value.length - 1).order(ByteOrder.LITTLE_ENDIAN);
            double d = type == DOUBLE ? bytes.getDouble() : bytes.getFloat();
            return Double.isFinite(d) ? Math.max(BigDecimal.valueOf(d).stripTrailingZeros().scale(), 0) : null;
        }
        return null;
    }
}
