package dev.sluice.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/** Stands in for the config-index extension, whose build-time part is not served: no runtime-editable settings. */
@ApplicationScoped
public class DynamicConfigListProducer {
  @Produces
  @ApplicationScoped
  DynamicConfigPropertyList dynamicConfigPropertyList() {
    return new DynamicConfigPropertyList(java.util.List.of());
  }
}
